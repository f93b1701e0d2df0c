"""The version of cadiff, in the one module every layer may import (it imports nothing)."""

__version__ = "0.1.0"
