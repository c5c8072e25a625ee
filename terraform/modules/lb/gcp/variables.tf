variable "name" {
  type        = string
  description = "Prefix of the load balancer's resources."
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service behind the load balancer."
}

variable "cloud_run_service_name" {
  type        = string
  description = "Cloud Run service the serverless network endpoint group points to."
}

variable "domain_name" {
  type        = string
  description = "Host name of the Google-managed certificate (the issuer's host)."
}

variable "security_policy_id" {
  type        = string
  description = "Cloud Armor security policy attached to the backend; null for none."
  default     = null
}

variable "log_sample_rate" {
  type        = number
  description = "Share of requests the load balancer logs (0-1)."
  default     = 1
}
