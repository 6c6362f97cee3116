"""Small payment modules used to test discovery and isolation."""
