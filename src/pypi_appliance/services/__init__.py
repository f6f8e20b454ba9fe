"""The containers' programs, on the pypiserver image's Python."""
