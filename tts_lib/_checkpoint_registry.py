"""Pinned commit and manifest hashes of the committed checkpoints (``python -m tts_lib.fetch
--write-registry`` writes this file; do not edit it by hand)."""

CHECKPOINTS_REF = "dd42d4819713a2465a3bd6dc5978c1fc2c86d8a4"
MANIFEST_SHA256 = {
    "gpt2_cpu20_compact_isotropic_n20_seed0.json": "52fc362d39798be4d55e1e51395e095c3d8613ca5c5878d70e9b2e40f3987aca",
    "gpt2_cpu20_compact_isotropic_n20_seed1.json": "f252e73eb461e7ee2cb0c8aea3f73d5067bc9ca898b8594c9d51fc411f8f0eb2",
    "gpt2_cpu20_compact_isotropic_n20_seed2.json": "da0d792c5648d7b49a78aa1bc3371db490e0f3e11a27f00310d9af372cc0d0ed",
    "gpt2_cpu20_compact_isotropic_n30_seed0.json": "28086b1483dc1f65e4c714371e5bbf128c7260cd52b93f3cfff8f413d96655c3",
    "gpt2_cpu20_compact_isotropic_n30_seed1.json": "340eaffdf99ac30b0ad77753c27d33fde88fed50455799a6968628d15c0a31e1",
    "gpt2_cpu20_compact_isotropic_n30_seed2.json": "614d13cb8a1ae49d585f867d8b2f706170a10c20fd07d4caf5782a9853f82e5d",
    "gpt2_cpu20_compact_isotropic_n40_seed0.json": "911d17533c264a7d698b8495a1d89446315da31375aef79cfdf9cbf99c29d50f",
    "gpt2_cpu20_compact_isotropic_n40_seed1.json": "b2536b7f00cdd4f2f1ee4dfc1fd8b8c444b5b224f911d9f1dc031e334a008754",
    "gpt2_cpu20_compact_isotropic_n40_seed2.json": "b2c5d31db15b2776be442c0f17e8ef768012d73a5bd8306d3402be1acf502c19",
    "gpt2_cpu20_compact_skewed2_n20_seed0.json": "4f9e1d13b1347827d34f1c6f9f9cd74fd1b2bb164ff407f7ef669407db02e822",
    "gpt2_cpu20_compact_skewed2_n20_seed1.json": "b3a8677ba5dd1801d35a895f7adb3179052015d01535d8ace5e315ae4a178442",
    "gpt2_cpu20_compact_skewed2_n20_seed2.json": "81c67d15557d4e951b3d9e2574e19af1154bc6b32679a1884e09c80061943f6d",
    "gpt2_cpu20_compact_skewed2_n30_seed0.json": "4ef6e56faf8ca90cdca28d57eb9d81fd5c2bdce165edcd8216659a3787088376",
    "gpt2_cpu20_compact_skewed2_n30_seed1.json": "587a4a027e1ae420d16c6c485d39fbefe8de399919f07b84f1516a1664d05d33",
    "gpt2_cpu20_compact_skewed2_n30_seed2.json": "e51668c9d4dac8a9f05a8c58ac66bab97283f541405672637fab8639a4973689",
    "gpt2_cpu20_compact_skewed2_n40_seed0.json": "649c98b2884556484771e0f1af119b073394a0218aa7adda734eceb51ba09a79",
    "gpt2_cpu20_compact_skewed2_n40_seed1.json": "94ad3df8c9d3446a31446f4ccdcda00e88e10c9b561583174977fb4b50889c98",
    "gpt2_cpu20_compact_skewed2_n40_seed2.json": "009b6e274a0c3639ce721659e49a86aa0700121321a8ea8c57e5ced6e1d6e64b",
    "gpt2_cpu_compact_isotropic_n10_seed0.json": "5245738b0e377d1a73da93d0ae8a59f19e77414f5b57f68dfc574ec0c138d7f3",
    "gpt2_cpu_compact_isotropic_n20_seed0.json": "d101a86fa68ba3715f4cec2d6f5ccf12425683832764c7825aa2c31081ed6b95",
}
