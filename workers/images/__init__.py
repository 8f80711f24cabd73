"""Image processing: thumbnails, checksum, dimensions and near-duplicate detection."""
