# Application Load Balancer: HTTPS listener (HTTP redirects to it) forwarding to a target group of
# Fargate task IPs, each probed on the readiness endpoint; /metrics is refused at the listener.

resource "aws_lb" "this" {
  name                       = var.name
  internal                   = false
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = var.security_group_ids
  idle_timeout               = var.idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  # The application's TRUST_PROXY is written for exactly this X-Forwarded-For shape: the ALB appends
  # the client's bare address to whatever the client sent. "preserve" would pass a client's header
  # through untouched (the client picks its address), and the client port ("203.0.113.7:51234") is
  # not an address the application can parse. Both are pinned so a console change shows as drift.
  xff_header_processing_mode = "append"
  enable_xff_client_port     = false

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "app" {
  name                 = "${var.name}-app"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.target_port
  deregistration_delay = 30

  # Readiness: a new task takes traffic after two passing checks (30 s), and a deployment whose tasks
  # never become ready (pending migrations, unreachable database) trips the ECS circuit breaker.
  # ECS also stops tasks this check reports unhealthy, so the unhealthy window (10 x 15 s = 150 s)
  # is kept longer than a Multi-AZ database failover (typically 60-120 s): a failover must not
  # replace every task. While every target is unhealthy the ALB routes to all of them anyway.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = var.health_check_path
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 10
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app.arn
  }

  tags = var.tags
}

# /metrics answers only inside the VPC. Two fences: these rules, evaluated before the forward
# default, and METRICS_TOKEN in the application. The path rule alone would not do: the application
# decodes percent-escapes before routing, so "/%6Detrics" reaches the metrics route. Every route of
# the API is literal segments and UUIDs, so a percent-escape in a path never names a resource and is
# refused as well (whether the ALB matches the raw or the decoded path, one of the two rules fires).
resource "aws_lb_listener_rule" "refuse_metrics" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 1

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Not Found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/metrics", "/metrics/*"]
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "refuse_percent_escapes" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 2

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Not Found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/*%*"]
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "http_redirect" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}
