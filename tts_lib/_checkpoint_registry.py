"""Pinned commit and manifest hashes of the committed checkpoints (``python -m tts_lib.fetch
--write-registry`` writes this file; do not edit it by hand)."""

CHECKPOINTS_REF = "d69e8ccb51e099d7eb8aa6ca4c6f99361b02f457"
MANIFEST_SHA256 = {
    "gpt2_cpu_compact_isotropic_n10_seed0.json": "7e631ee3adf68de289d5c11324df2624b9fb983d7d2d5ed8c2aed8dedb5fbfa1",
    "gpt2_cpu_compact_isotropic_n20_seed0.json": "dd8d7a6cbb8dc0765f41bcbe0c908e5cdad92b2db994e0dd2afceebae139dab0",
    "gpt2_cpu_compact_isotropic_n5_seed0.json": "02661b19673def29f5cea7ff4f832775aa2bd56c11dd1acc231eb1dd4e871ae0",
    "gpt2_cpu_compact_skewed2_n20_seed0.json": "56e76b85a9df91134c1e3f3ab914195af2736b85272739868717194064899220",
    "gpt2_cpu_compact_skewed2_n30_seed0.json": "2ddba48f8dc00858828a65c0d77eee40415bfae1ffee467b6e16c2f56110a5ce",
    "gpt2_cpu_compact_skewed2_n40_L1_seed0.json": "11d8646c1d861ffe65685c248d174c3373bbabf431131f61e3b86a85ee5b800d",
    "gpt2_cpu_compact_skewed2_n40_seed0.json": "0451e0c062331f54217a2b127e6f0ff8bec9c042120003a0a0a7ade0430078fb",
    "gpt2_cpu_compact_skewed2_n40_seed1.json": "f6be72d9630a3fa1d7fbcebdb5d4c89c8267253ee8140b967d6d039e6188ceee",
}
