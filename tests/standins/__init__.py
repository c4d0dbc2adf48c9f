"""Conformance of each stand-in to the real service it stands in for (its upstream source
or API reference, cited in the stand-in), over HTTP with the real clients."""
