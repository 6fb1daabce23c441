"""Shipped configuration: ``daemon.yaml`` (every key, with defaults) and ``vehicles/*.yaml``.

A package only so that the wheel carries these files and code finds them with
``importlib.resources`` wherever the project is installed (``controller.config.DEFAULT_CONFIG``,
``vehicle_models.params.VEHICLE_DIR``).
"""
