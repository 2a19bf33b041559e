"""robostack: robot policy training and deployment.

Data flow: ``data`` (zarr episode stores) -> ``sim`` (tasks and experts) -> policies -> algorithms -> export -> deploy.
"""

__version__ = "0.1.0"
