"""``python -I -m agentceiling.tfprovider``: the Terraform provider plugin."""

from __future__ import annotations

import os
import sys

from agentceiling.tfprovider.main import main

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # grpc's threads make a normal interpreter exit slow; everything is stopped and cleaned up.
    os._exit(code)
