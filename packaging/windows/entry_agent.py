"""PyInstaller entry point: certfleet-agent.exe (the agent's command line: enroll, scan, run, ...)."""
import sys

from agent.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
