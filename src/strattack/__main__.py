"""``python -m strattack ...``: the same command line as the ``strattack`` script."""
from .cli import main

if __name__ == "__main__":
    main()
