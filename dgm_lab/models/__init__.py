"""Models, one package per family (``vae``, ``gan``, ``boltzmann``) on a shared base
(``base.GenerativeModule``); ``conf/model/<name>.yaml`` names its class with ``_target_``, e.g.
``dgm_lab.models.vae.VAE``. Old class paths map to new ones in ``moved.MOVED_TARGETS``."""
