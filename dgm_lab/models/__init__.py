"""Models. Each family is one module; ``conf/model/<name>.yaml`` names its class with ``_target_``."""
