# Terraform builds the zips through lbuild's external data source: each
# `data "external"` runs `lbuild terraform`, which builds one artifact
# (incrementally: a plan with no source change costs milliseconds) and
# returns its path and CodeSha256. The same inputs give the same bytes on
# every machine, so `source_code_hash` never shows a false diff.

terraform {
  required_providers {
    aws      = { source = "hashicorp/aws", version = ">= 5.0" }
    external = { source = "hashicorp/external", version = ">= 2.3" }
  }
}

locals {
  manifest = "${path.module}/../lambda.toml"
}

data "external" "common" {
  program = ["lbuild", "terraform"]
  query   = { layer = "common", manifest = local.manifest }
}

data "external" "orders" {
  program = ["lbuild", "terraform"]
  query   = { function = "orders", manifest = local.manifest }
}

data "external" "billing" {
  program = ["lbuild", "terraform"]
  query   = { function = "billing", manifest = local.manifest }
}

variable "role_arn" {
  type        = string
  description = "Execution role of both functions"
}

resource "aws_lambda_layer_version" "common" {
  layer_name               = "common"
  filename                 = data.external.common.result.zip
  source_code_hash         = data.external.common.result.code_sha256
  compatible_runtimes      = ["python3.12"]
  compatible_architectures = ["arm64"]
}

resource "aws_lambda_function" "orders" {
  function_name    = "orders"
  role             = var.role_arn
  runtime          = "python3.12"
  architectures    = ["arm64"]
  handler          = "orders.app.handler"
  filename         = data.external.orders.result.zip
  source_code_hash = data.external.orders.result.code_sha256
  layers           = [aws_lambda_layer_version.common.arn]
}

resource "aws_lambda_function" "billing" {
  function_name    = "billing"
  role             = var.role_arn
  runtime          = "python3.12"
  architectures    = ["arm64"]
  handler          = "billing.app.handler"
  filename         = data.external.billing.result.zip
  source_code_hash = data.external.billing.result.code_sha256
}
