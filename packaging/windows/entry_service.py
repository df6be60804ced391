"""PyInstaller entry point: certfleet-agent-service.exe (the Windows service and its commands).

See agent/cli/winservice.py: install/start/stop/restart/status/remove/debug, and `service`, which
is what the Service Control Manager runs.
"""
import logging
import sys

from agent.cli.winservice import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
