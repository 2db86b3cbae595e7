from cpumodel.cli import main

main()
