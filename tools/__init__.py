"""Developer tools that regenerate cpumodel's data from primary sources (not shipped)."""
