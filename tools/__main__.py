"""`python -m tools`: the `hcp` command (tools/cli.py), for an installation
whose entry point is not beside its interpreter (tools/command.py)."""

from tools.cli import main

if __name__ == "__main__":
    main(prog_name="hcp")
