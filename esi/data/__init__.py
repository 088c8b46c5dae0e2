"""ECG data: records, readers per source, preprocessing, the synthetic generator and the on-disk store."""
