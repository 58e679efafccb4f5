"""Doorstep: one bounded, verified, recorded visit at a time.

The access service (`doorstep serve`), the home hub (`doorstep hub`) and the demo
(`doorstep demo`) live in this package. `doorstep.protocol` is the contract between the
service and the hub; the hub imports only `protocol`, never the service.
"""

__version__ = "0.1.0"
