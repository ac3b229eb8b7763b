"""Media: the bytes of photos, voice notes, documents, video and stickers (GridFS) and their records."""
