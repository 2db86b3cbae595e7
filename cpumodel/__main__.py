from cpumodel.cli import run

run()
