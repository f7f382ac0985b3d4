"""A real QEMU beside the model: the lab (issue 5).

``python -m kit lab check|run|matrix``.  The guest is built from Debian
packages (:mod:`kit.lab.image`), QEMU is driven over QMP (:mod:`kit.lab.qmp`),
and one experiment boots a source, migrates it to a destination on 127.0.0.1
and checks the destination's health (:mod:`kit.lab.experiment`).
"""
