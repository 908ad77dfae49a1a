"""Maintainer tooling that is not part of the neuronscope library.

``tools.photoset`` assembles the offline photo set from registry packages (it runs
``apt-get download`` and ``dpkg-deb``); ``tools.rcc`` reads the Qt resource bundles
one of those packages ships. ``scripts/build_photoset.py`` (``make photos``) runs them.
The library only reads a built set (:mod:`neuronscope.data.photoset`).
"""
