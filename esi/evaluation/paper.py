"""The published figures of the ESI paper (TMLR 2024, Tables 2-5), for printing beside measured ones.

They are never mixed into measured cells: :func:`esi.evaluation.tables.published_tables` prints them in
tables of their own, titled as published. Values are (PTB-XL, ICBEB) pairs; None where the paper has "-".
"""

from __future__ import annotations

SOURCE = "ESI paper (TMLR 2024), as transcribed in ../shared/REFERENCE.md"

# Table 2: arrhythmia classification, macro AUC (PTB-XL, ICBEB).
TABLE2 = {
    "Supervised": {
        "LSTM": (0.907, 0.964), "XResNet101": (0.925, 0.974), "ResNet50": (0.919, 0.969),
        "Ensemble": (0.929, 0.975), "MLBF-Net": (0.931, None), "MVMSN": (0.933, None),
        "ConvNeXt-Tiny": (0.917, 0.972), "ConvNeXt-Base": (0.913, 0.969),
    },
    "Linear probe": {
        "SimCLR": (0.764, 0.788), "BYOL": (0.771, 0.804), "CLOCS": (0.774, 0.799), "LEAVES": (0.792, 0.809),
        "MERL": (0.887, None), "ESI-tiny": (0.928, 0.976), "ESI": (0.932, 0.977),
    },
    "Fine-tune": {
        "SimCLR": (0.919, 0.971), "BYOL": (0.924, 0.969), "CLOCS": (0.915, 0.975), "CRT": (0.892, None),
        "LEAVES": (0.928, 0.975), "ESI-tiny": (0.936, 0.978), "ESI": (0.939, 0.981),
    },
}

# Table 3: PTB-XL zero-shot / few-label: method -> (training labels, AUC, F1-macro).
TABLE3 = {
    "SimCLR": ("5%", 0.735, 0.547), "BYOL": ("5%", 0.752, 0.564), "CLOCS": ("5%", 0.765, 0.581),
    "LEAVES": ("5%", 0.760, 0.577), "METS": ("0%", None, 0.593), "MERL": ("0%", 0.757, None),
    "ESI": ("0%", 0.812, 0.654),
}

# Table 4: 1-shot identification: ((PTB-XL AUC, ACC), (ICBEB AUC, ACC)).
TABLE4 = {
    "Supervised": {
        "LSTM": ((0.905, 0.446), (0.916, 0.608)), "XResNet101": ((0.917, 0.477), (0.922, 0.624)),
        "ResNet50": ((0.922, 0.493), (0.930, 0.636)), "Ensemble": ((0.925, 0.502), (0.936, 0.653)),
        "ConvNeXt-Tiny": ((0.919, 0.481), (0.934, 0.647)), "ConvNeXt-Base": ((0.920, 0.488), (0.932, 0.640)),
    },
    "Linear probe": {
        "SimCLR": ((0.802, 0.174), (0.842, 0.254)), "BYOL": ((0.835, 0.236), (0.857, 0.281)),
        "CLOCS": ((0.814, 0.199), (0.835, 0.237)), "LEAVES": ((0.841, 0.248), (0.855, 0.276)),
        "ESI-tiny": ((0.923, 0.511), (0.937, 0.654)), "ESI": ((0.926, 0.518), (0.942, 0.663)),
    },
    "Fine-tune": {
        "SimCLR": ((0.934, 0.522), (0.945, 0.673)), "BYOL": ((0.942, 0.547), (0.951, 0.686)),
        "CLOCS": ((0.929, 0.516), (0.940, 0.666)), "LEAVES": ((0.944, 0.550), (0.953, 0.688)),
        "ESI-tiny": ((0.966, 0.591), (0.980, 0.747)), "ESI": ((0.970, 0.608), (0.985, 0.762)),
    },
}

# Table 5: ESI-tiny, linear probe, PTB-XL AUC: row -> (arrhythmia, identification).
TABLE5 = {
    "full": (0.928, 0.923), "without CQA": (0.901, 0.902), "without captioning loss": (0.913, 0.905),
    "without contrastive loss": (0.850, 0.877), "ViT-1D (84.92M)": (0.897, 0.910),
    "XResNet101-1D (1.80M)": (0.894, 0.901), "ConvNeXt-tiny (26.81M)": (0.928, 0.923),
    "ConvNeXt-base (85.56M)": (0.932, 0.926),
}
