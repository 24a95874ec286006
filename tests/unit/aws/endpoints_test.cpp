// Endpoint resolution, credentials and region from the environment, URL splitting.
#include "rstasker/aws/endpoints.hpp"

#include <gtest/gtest.h>

#include <map>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::aws {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Endpoints, StandardRegionalHostsAreHttps) {
  auto e = resolve_endpoint(service::kRedshiftData, "eu-west-1", env_of({}));
  EXPECT_EQ(e.url, "https://redshift-data.eu-west-1.amazonaws.com");
  EXPECT_EQ(e.signing_name, "redshift-data");
  EXPECT_EQ(e.region, "eu-west-1");
  EXPECT_EQ(resolve_endpoint(service::kStepFunctions, "us-east-1", env_of({})).url,
            "https://states.us-east-1.amazonaws.com");
  EXPECT_EQ(resolve_endpoint(service::kDynamoDb, "cn-north-1", env_of({})).url,
            "https://dynamodb.cn-north-1.amazonaws.com.cn");
}

TEST(Endpoints, ServiceSpecificOverrideWinsOverGlobal) {
  auto env = env_of({{"AWS_ENDPOINT_URL", "http://127.0.0.1:4566"},
                     {"AWS_ENDPOINT_URL_REDSHIFT_DATA", "http://localhost:9000/"}});
  EXPECT_EQ(resolve_endpoint(service::kRedshiftData, "us-east-1", env).url,
            "http://localhost:9000");
  auto dynamo = resolve_endpoint(service::kDynamoDb, "us-east-1", env);
  EXPECT_EQ(dynamo.url, "http://127.0.0.1:4566");
  EXPECT_EQ(dynamo.signing_name, "dynamodb");
  EXPECT_EQ(resolve_endpoint(service::kStepFunctions, "us-east-1",
                             env_of({{"AWS_ENDPOINT_URL_SFN", "https://sfn.internal:8443"}}))
                .url,
            "https://sfn.internal:8443");
}

TEST(Endpoints, MalformedOverridesAreConfigurationErrors) {
  for (const char* bad : {"ftp://x", "localhost:4566", "http://", "http://host/path"}) {
    try {
      resolve_endpoint(service::kSqs, "us-east-1", env_of({{"AWS_ENDPOINT_URL_SQS", bad}}));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.name(), "ConfigurationError") << bad;
      EXPECT_NE(e.message().find("AWS_ENDPOINT_URL_SQS"), std::string::npos) << e.message();
    }
  }
}

TEST(Credentials, FromEnvironmentWithAndWithoutSessionToken) {
  auto c = credentials_from_env(env_of({{"AWS_ACCESS_KEY_ID", "AKID"},
                                        {"AWS_SECRET_ACCESS_KEY", "SECRET"},
                                        {"AWS_SESSION_TOKEN", "TOKEN"}}));
  EXPECT_EQ(c.access_key_id, "AKID");
  EXPECT_EQ(c.secret_access_key, "SECRET");
  EXPECT_EQ(c.session_token, "TOKEN");
  EXPECT_EQ(
      credentials_from_env(env_of({{"AWS_ACCESS_KEY_ID", "A"}, {"AWS_SECRET_ACCESS_KEY", "S"}}))
          .session_token,
      "");
  try {
    credentials_from_env(env_of({{"AWS_ACCESS_KEY_ID", "A"}}));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "ConfigurationError");
    EXPECT_NE(e.message().find("AWS_SECRET_ACCESS_KEY"), std::string::npos);
  }
}

TEST(Region, RegionThenDefaultRegionAndValidation) {
  EXPECT_EQ(
      region_from_env(env_of({{"AWS_REGION", "eu-west-1"}, {"AWS_DEFAULT_REGION", "us-east-1"}})),
      "eu-west-1");
  EXPECT_EQ(region_from_env(env_of({{"AWS_DEFAULT_REGION", "us-east-1"}})), "us-east-1");
  EXPECT_THROW(region_from_env(env_of({})), Error);
  EXPECT_THROW(region_from_env(env_of({{"AWS_REGION", "EU WEST"}})), Error);
}

TEST(SplitUrl, Parts) {
  auto p = split_url("https://host.example:8443/a/b?x=1&y=2");
  EXPECT_EQ(p.scheme, "https");
  EXPECT_EQ(p.authority, "host.example:8443");
  EXPECT_EQ(p.path, "/a/b");
  EXPECT_EQ(p.query, "x=1&y=2");
  auto bare = split_url("http://127.0.0.1:80");
  EXPECT_EQ(bare.path, "/");
  EXPECT_EQ(bare.query, "");
  EXPECT_EQ(split_url("http://h?q").path, "/");
  EXPECT_EQ(split_url("http://h?q").query, "q");
  EXPECT_THROW(split_url("no-scheme"), Error);
  EXPECT_THROW(split_url("http:///path"), Error);
}

TEST(Headers, CaseInsensitiveLookupAndReplace) {
  HttpRequest r;
  r.headers = {{"Content-Type", "a"}, {"X-Other", "b"}};
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_EQ(*r.header("CONTENT-TYPE"), "a");
  r.set_header("content-type", "c");
  EXPECT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(*r.header("Content-Type"), "c");
  EXPECT_EQ(r.header("missing"), nullptr);
  HttpResponse response;
  response.headers = {{"x-amzn-ErrorType", "Foo"}};
  EXPECT_EQ(response.header("X-Amzn-Errortype"), "Foo");
  EXPECT_EQ(response.header("nope"), "");
}

}  // namespace
}  // namespace rstasker::aws
