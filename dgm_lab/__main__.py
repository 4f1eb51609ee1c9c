from dgm_lab.train import main

main()
