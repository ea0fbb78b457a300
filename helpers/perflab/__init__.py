"""perflab: the helper package of the AI Systems Performance Lab.

Small modules, one job each; importing perflab touches no GPU and changes no
settings. GPU libraries are imported inside the functions that need them.

    from perflab import env, timing, results, params, plots, checks
"""

__version__ = "0.1.0"
