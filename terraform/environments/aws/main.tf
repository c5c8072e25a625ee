# AgentIdP on AWS:
#   Route 53 -> ALB (public subnets, HTTPS) -> ECS Fargate tasks (private subnets)
#            -> RDS PostgreSQL 14 Multi-AZ + ElastiCache Redis 7 (primary + replica)
# Secrets live in Secrets Manager and are injected into the task definition.

module "rds" {
  source = "../../modules/rds/aws"

  name                  = local.prefix
  subnet_ids            = aws_subnet.private[*].id
  security_group_ids    = [aws_security_group.db.id]
  instance_class        = var.db_instance_class
  allocated_storage_gb  = var.db_allocated_storage_gb
  backup_retention_days = var.db_backup_retention_days
  database_name         = "agentidp"
  username              = local.db_username
  password              = random_password.db.result
  multi_az              = true
  deletion_protection   = var.deletion_protection
}

module "redis" {
  source = "../../modules/redis/aws"

  name               = local.prefix
  subnet_ids         = aws_subnet.private[*].id
  security_group_ids = [aws_security_group.redis.id]
  node_type          = var.redis_node_type
  replica_count      = 1
  auth_token         = random_password.redis_auth.result
}

module "lb" {
  source = "../../modules/lb/aws"

  name                = local.prefix
  vpc_id              = aws_vpc.this.id
  subnet_ids          = aws_subnet.public[*].id
  security_group_ids  = [aws_security_group.alb.id]
  certificate_arn     = aws_acm_certificate_validation.this.certificate_arn
  target_port         = local.app_port
  health_check_path   = "/health/ready"
  deletion_protection = var.deletion_protection
}

module "agentidp" {
  source = "../../modules/agentidp/aws"

  name               = local.prefix
  aws_region         = var.aws_region
  container_image    = var.container_image
  container_port     = local.app_port
  cpu                = var.task_cpu
  memory             = var.task_memory
  desired_count      = var.min_tasks
  min_count          = var.min_tasks
  max_count          = var.max_tasks
  subnet_ids         = aws_subnet.private[*].id
  security_group_ids = [aws_security_group.app.id]
  target_group_arn   = module.lb.target_group_arn
  log_retention_days = var.log_retention_days

  environment = merge(var.extra_environment, {
    ISSUER_URL                 = "https://${var.domain_name}"
    JWT_PUBLIC_KEY             = var.jwt_public_key
    JWT_ADDITIONAL_PUBLIC_KEYS = var.jwt_additional_public_keys
    TOKEN_TTL_SECONDS          = tostring(var.token_ttl_seconds)
    CORS_ORIGIN                = var.cors_origin
    LOG_LEVEL                  = var.log_level
    # The ALB's nodes connect from the public subnets and append the client's address to
    # X-Forwarded-For: believe the header only from them (terraform/README.md, Client addresses).
    TRUST_PROXY = join(",", aws_subnet.public[*].cidr_block)
  })

  secrets = {
    DATABASE_URL    = aws_secretsmanager_secret.database_url.arn
    REDIS_URL       = aws_secretsmanager_secret.redis_url.arn
    JWT_PRIVATE_KEY = local.jwt_private_key_value_from
    METRICS_TOKEN   = aws_secretsmanager_secret.metrics_token.arn
  }
  secret_arns = [
    aws_secretsmanager_secret.database_url.arn,
    aws_secretsmanager_secret.redis_url.arn,
    aws_secretsmanager_secret.jwt_private_key.arn,
    aws_secretsmanager_secret.metrics_token.arn,
  ]

  # the target group must be attached to a listener, and the URLs stored, before tasks start
  depends_on = [
    module.lb,
    aws_secretsmanager_secret_version.database_url,
    aws_secretsmanager_secret_version.redis_url,
    aws_secretsmanager_secret_version.metrics_token,
  ]
}
