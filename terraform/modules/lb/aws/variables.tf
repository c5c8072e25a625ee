variable "name" {
  type        = string
  description = "Name of the load balancer (at most 28 characters: the target group appends \"-app\")."

  validation {
    condition     = length(var.name) <= 28
    error_message = "At most 28 characters."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the target group."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Public subnets, in at least two availability zones, the load balancer's nodes live in."
}

variable "security_group_ids" {
  type        = list(string)
  description = "Security groups of the load balancer (443 and 80 in, the application port out)."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate (validated) served by the HTTPS listener."
}

variable "ssl_policy" {
  type        = string
  description = "TLS policy of the HTTPS listener."
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "target_port" {
  type        = number
  description = "Port the application containers listen on."
  default     = 3000
}

variable "health_check_path" {
  type        = string
  description = "Path the target group probes; 200 means ready for traffic. The readiness endpoint: it answers 503 while PostgreSQL, Redis or the schema is not ready."
  default     = "/health/ready"
}

variable "idle_timeout" {
  type        = number
  description = "Seconds an idle connection is kept open."
  default     = 60
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the load balancer."
  default     = true
}

variable "access_logs_bucket" {
  type        = string
  description = "S3 bucket for access logs; null turns them off."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource of this module."
  default     = {}
}
