# Cross builds, size budget and board targets (see board-configs/README.md).
