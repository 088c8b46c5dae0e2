"""The condition vocabulary and label harmonisation: a low layer that data, CQA, evaluation and serving import.

``vocabulary`` holds the conditions (SNOMED CT ids where they exist); ``harmonize`` maps SCP, SNOMED, ICBEB/CPSC and
MIMIC statements onto them (``mimic_rules`` for free-text statements).
"""
