"""Published numbers the kit is checked against (typed in from their sources, never model output).

SEED_2016: the table in the cover letter of "[RFC qemu 0/4] A PV solution for live
migration optimization", Liang Li, 3 Mar 2016
(Message-ID 1457001868-15949-1-git-send-email-liang.z.li@intel.com).
Testbed: Xeon E5-2699 v3 @ 2.30 GHz, host 64 GB, host Linux 4.2.0 (CentOS 7.1),
guest Linux 4.5-rc6 (CentOS 6.6), X540-AT2 10 GbE, guest RAM 8 GB.
"transferred ram (KB)" is QEMU's ``info migrate`` figure, bytes >> 10.
"""

SEED_2016_RAM = "8G"
SEED_2016 = (
    # case: idle = "idle guest just boots"; workload = "has run some memory consuming
    # workload, terminated just before live migration" (our ``hog`` workload)
    {"case": "idle", "workload": "idle", "mode": "original", "total-time-ms": 1894, "transferred-kb": 398017},
    {"case": "idle", "workload": "idle", "mode": "pv", "total-time-ms": 421, "transferred-kb": 353242},
    {"case": "workload", "workload": "hog", "mode": "original", "total-time-ms": 7436, "transferred-kb": 8146291},
    {"case": "workload", "workload": "hog", "mode": "pv", "total-time-ms": 552, "transferred-kb": 361375},
)

# Liang Li's replies of 4 Mar 2016 in the RFC thread: building the free-page bitmap of an
# idle 8 GB guest takes about 20 ms, handing it to QEMU about 3 ms.
SEED_2016_BITMAP_BUILD_MS = 20
SEED_2016_BITMAP_TRANSFER_MS = 3
