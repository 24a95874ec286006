// Production wiring: one JSON client per service, all sharing one pooled transport.
#include "rstasker/tasker/wiring.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/metrics.hpp"
#include "rstasker/services/dynamodb.hpp"

namespace rstasker::tasker {

std::unique_ptr<Tasker> make_tasker(const aws::EnvLookup& env,
                                    std::shared_ptr<aws::HttpTransport> transport,
                                    std::FILE* metrics_out) {
  Config config = config_from_env(env);
  log::add_secret(config.credentials.secret_access_key);
  log::add_secret(config.credentials.session_token);
  metrics::Settings metric_settings;
  metric_settings.enabled = config.metrics_enabled;
  metric_settings.name_space = config.metrics_namespace;
  metric_settings.function_name = env("AWS_LAMBDA_FUNCTION_NAME").value_or("");
  metric_settings.out = metrics_out;
  switch (spdlog::default_logger()->level()) {
    case spdlog::level::warn:
      metric_settings.level = "WARN";
      break;
    case spdlog::level::err:
      metric_settings.level = "ERROR";
      break;
    case spdlog::level::critical:
    case spdlog::level::off:
      metric_settings.level = "FATAL";
      break;
    default:
      metric_settings.level = "INFO";
  }
  metrics::init(std::move(metric_settings));

  auto client = [&](const aws::ServiceSpec& spec, const aws::JsonProtocol& protocol) {
    return std::make_shared<const aws::JsonClient>(
        protocol, aws::resolve_endpoint(spec, config.region, env), config.credentials, transport);
  };
  Dependencies deps;
  deps.redshift = services::make_redshift_data(
      client(aws::service::kRedshiftData, aws::protocol::kRedshiftData));
  deps.state = make_dynamodb_state_table(std::make_shared<const services::DynamoDb>(client(
                                             aws::service::kDynamoDb, aws::protocol::kDynamoDb)),
                                         config.table_name);
  deps.step_functions = services::make_step_functions(
      client(aws::service::kStepFunctions, aws::protocol::kStepFunctions));
  deps.cloudformation = services::make_cfn_responder(transport);
  return std::make_unique<Tasker>(std::move(config), std::move(deps));
}

}  // namespace rstasker::tasker
