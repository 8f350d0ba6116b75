"""Where motion-meta keeps state: protocols, and the embedded defaults under MOTION_META_HOME."""

from motion_meta_cli.storage.base import Cache, CacheLock, CustomerStore, SecretRecord, SecretsStore, Snapshot

__all__ = ["Cache", "CacheLock", "CustomerStore", "SecretRecord", "SecretsStore", "Snapshot"]
