"""Real-KVM oracle recorder: python -m tools.oracle --help."""
