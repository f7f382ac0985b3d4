"""pv-migration-kit: a page-granular model of the 2016 QEMU RFC
"A PV solution for live migration optimization" (Liang Li), for teaching."""

__version__ = "0.1.0"
