# Memorystore for Redis 7, STANDARD_HA (primary + replica in another zone, automatic failover),
# AUTH on and in-transit encryption: clients use rediss:// on port 6378 and must trust the
# instance's own CA (exported below; the environment mounts it and sets NODE_EXTRA_CA_CERTS).

resource "google_redis_instance" "this" {
  name                    = var.name
  region                  = var.region
  tier                    = "STANDARD_HA"
  redis_version           = var.redis_version
  memory_size_gb          = var.memory_size_gb
  replica_count           = var.replica_count
  read_replicas_mode      = "READ_REPLICAS_ENABLED"
  authorized_network      = var.network_id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  # every key AgentIdP writes carries a TTL (rate-limit windows): evict among those first
  redis_configs = {
    maxmemory-policy = "volatile-lru"
  }

  labels = var.labels
}
