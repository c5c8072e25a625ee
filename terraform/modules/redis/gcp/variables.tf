variable "name" {
  type        = string
  description = "Name of the Memorystore instance."
}

variable "region" {
  type        = string
  description = "Region of the instance (primary and replicas in different zones of it)."
}

variable "network_id" {
  type        = string
  description = "VPC network (id) authorised to reach the instance through private services access."
}

variable "redis_version" {
  type        = string
  description = "Memorystore Redis version (7.x)."
  default     = "REDIS_7_2"

  validation {
    condition     = can(regex("^REDIS_7_[0-9]+$", var.redis_version))
    error_message = "AgentIdP runs on Redis 7 (REDIS_7_0 or REDIS_7_2)."
  }
}

variable "memory_size_gb" {
  type        = number
  description = "Memory of the instance in GB."
  default     = 1
}

variable "replica_count" {
  type        = number
  description = "Read replicas of the STANDARD_HA instance (1-5)."
  default     = 1
}

variable "labels" {
  type        = map(string)
  description = "Labels of the instance."
  default     = {}
}
