from dgm_lab.reproduce.cli import entry

entry()
