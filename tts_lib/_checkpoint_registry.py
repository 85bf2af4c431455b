"""Pinned commit and manifest hashes of the committed checkpoints (``python -m tts_lib.fetch
--write-registry`` writes this file; do not edit it by hand)."""

CHECKPOINTS_REF = "c64bb88ebd894f76ac5eb9a6dcf83b941123ef90"
MANIFEST_SHA256 = {
    "gpt2_cpu_compact_isotropic_n10_seed0.json": "5245738b0e377d1a73da93d0ae8a59f19e77414f5b57f68dfc574ec0c138d7f3",
    "gpt2_cpu_compact_isotropic_n20_seed0.json": "d101a86fa68ba3715f4cec2d6f5ccf12425683832764c7825aa2c31081ed6b95",
    "gpt2_cpu_compact_isotropic_n5_seed0.json": "edcba34d51ea4972722e24d6bb219325409130f6aee6b67786ef60f61d1a70dc",
    "gpt2_cpu_compact_skewed2_n20_seed0.json": "8f6469b83884e9b815f4047c4049e0ef1e4cd16e615fc26a039006f925cae69e",
    "gpt2_cpu_compact_skewed2_n30_seed0.json": "198e812611edbba31a2b62a6620a17c437ee754ced2e8924a6f820aebb9f4016",
    "gpt2_cpu_compact_skewed2_n40_L1_seed0.json": "6aef7a9a013eac5a4e0e99df85c60051c8391084157be3755d0b9866b3ff0cad",
    "gpt2_cpu_compact_skewed2_n40_seed0.json": "9552150701cbf87f3931b9283784f4d21dcd5902c6f93a05ea41e5a957ac8cac",
    "gpt2_cpu_compact_skewed2_n40_seed1.json": "2c7999549788d65d76b50ebc8b2f4542918d4d0278f86654220dd058b21539de",
}
