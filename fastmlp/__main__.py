"""``python -m fastmlp``: the ``fastmlp`` command; see fastmlp/cli/."""
import sys

from fastmlp.cli import main

__all__ = ["main"]      # the console script's entry point is fastmlp.__main__:main

if __name__ == "__main__":
    sys.exit(main())
