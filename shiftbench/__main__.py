"""``python -m shiftbench …`` (and ``torchrun … -m shiftbench run …``): the command line."""

from shiftbench.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
