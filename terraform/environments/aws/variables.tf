variable "aws_region" {
  type        = string
  description = "AWS region to deploy to, e.g. us-east-1."
}

variable "environment" {
  type        = string
  description = "Environment name, used in resource names and tags (production, staging, …; at most 11 characters)."
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,10}$", var.environment))
    error_message = "Lower-case letters and digits, at most 11 characters."
  }
}

variable "name" {
  type        = string
  description = "Base name of every resource; resources are named <name>-<environment> (name: at most 16 characters)."
  default     = "agentidp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,15}$", var.name))
    error_message = "Lower-case letters, digits and hyphens, starting with a letter, at most 16 characters."
  }
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for every resource."
  default     = {}
}

# --- network ---------------------------------------------------------------------------------

variable "vpc_cidr" {
  type        = string
  description = "CIDR of the VPC; public and private subnets are carved out of it (/20 each for a /16)."
  default     = "10.40.0.0/16"
}

variable "az_count" {
  type        = number
  description = "Availability zones to spread subnets, tasks, the database standby and the cache replica over."
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "Between 2 and 4 availability zones (Multi-AZ needs at least 2)."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all private subnets (cheaper) instead of one per availability zone (survives an AZ outage)."
  default     = false
}

variable "allowed_ingress_cidrs" {
  type        = list(string)
  description = "Client networks allowed to reach the load balancer on 80/443."
  default     = ["0.0.0.0/0"]
}

# --- DNS and TLS -----------------------------------------------------------------------------

variable "route53_zone_name" {
  type        = string
  description = "Public Route 53 hosted zone holding domain_name, e.g. example.com."
}

variable "domain_name" {
  type        = string
  description = "Host name of the IdP, e.g. idp.example.com: ISSUER_URL becomes https://<domain_name>."
}

# --- application -----------------------------------------------------------------------------

variable "container_image" {
  type        = string
  description = "AgentIdP image (from the repository's Dockerfile) in ECR, preferably by digest: <account>.dkr.ecr.<region>.amazonaws.com/agentidp@sha256:…"
}

variable "task_cpu" {
  type        = number
  description = "Fargate CPU units per task (1024 = 1 vCPU)."
  default     = 1024
}

variable "task_memory" {
  type        = number
  description = "Fargate memory per task in MiB."
  default     = 2048
}

variable "min_tasks" {
  type        = number
  description = "Fewest running tasks."
  default     = 2
}

variable "max_tasks" {
  type        = number
  description = "Most running tasks (each opens up to 20 PostgreSQL connections: keep max × 20 below the database's max_connections)."
  default     = 10
}

variable "jwt_public_key" {
  type        = string
  description = "PEM public key matching the private key stored in the <name>/jwt-private-key secret (public: not a secret). Literal \\n accepted."
}

variable "jwt_additional_public_keys" {
  type        = string
  description = "Previous or next public keys still verifying tokens (ops/runbooks/jwt-key-rotation.md); empty for none."
  default     = ""
}

variable "jwt_private_key_version_id" {
  type        = string
  description = "Version id of the jwt-private-key secret the tasks use; empty follows AWSCURRENT. Pin it during a key rotation so that key and public key change in the same deployment."
  default     = ""
}

variable "token_ttl_seconds" {
  type        = number
  description = "Access token lifetime (TOKEN_TTL_SECONDS, 60-86400)."
  default     = 3600
}

variable "cors_origin" {
  type        = string
  description = "Allowed CORS origin(s), comma-separated (CORS_ORIGIN); * for any."
  default     = "*"
}

variable "log_level" {
  type        = string
  description = "pino log level (LOG_LEVEL)."
  default     = "info"
}

variable "extra_environment" {
  type        = map(string)
  description = "Further non-secret variables for the container (e.g. RATE_LIMIT_TOKEN_PER_CLIENT, DOCS_ENABLED). Secrets belong in Secrets Manager: names of secrets are refused here."
  default     = {}

  validation {
    # a plain environment variable shows in the task definition to anyone who may describe it
    condition = alltrue([
      for name in keys(var.extra_environment) :
      !can(regex("(?i)(SECRET|PASSWORD|PASSWD|PRIVATE_KEY|_TOKEN)$|^(TOKEN|DATABASE_URL|REDIS_URL)$", name))
    ])
    error_message = "A secret (…_SECRET, …_PASSWORD, …_PRIVATE_KEY, …_TOKEN, DATABASE_URL, REDIS_URL) is not a plain environment variable: put it into Secrets Manager and the module's secrets."
  }
}

variable "metrics_scraper_security_group_ids" {
  type        = list(string)
  description = "Security groups of in-VPC Prometheus scrapers that may reach the tasks' port directly (GET /metrics with the METRICS_TOKEN); empty for none."
  default     = []
}

variable "log_retention_days" {
  type        = number
  description = "Days CloudWatch keeps the application logs."
  default     = 30
}

# --- data stores -----------------------------------------------------------------------------

variable "db_instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.t4g.medium"
}

variable "db_allocated_storage_gb" {
  type        = number
  description = "Initial RDS storage in GiB."
  default     = 50
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of RDS automated backups / point-in-time recovery."
  default     = 14
}

variable "database_ca_bundle_path" {
  type        = string
  description = "Path inside the image of the RDS CA bundle DATABASE_URL names as sslrootcert (sslmode=verify-full). The repository's Dockerfile ships it at this path."
  default     = "/app/certs/aws-rds-global-bundle.pem"

  validation {
    condition     = can(regex("^/[A-Za-z0-9._/-]+$", var.database_ca_bundle_path))
    error_message = "An absolute path of letters, digits, dots, dashes and slashes (it is written into a URL)."
  }
}

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type."
  default     = "cache.t4g.small"
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the database and the load balancer from deletion."
  default     = true
}
