"""``python -m dgm_lab.compare`` is ``dgm-compare``."""

from dgm_lab.compare.cli import main

if __name__ == "__main__":
    main()
