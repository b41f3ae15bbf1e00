//! Alerts to an SNS topic (`ALERT_TOPIC_ARN`, the template's `AlertTopicArn`), through the same
//! SDK family and HTTPS client as Secrets Manager.

use aws_sdk_sns::config::BehaviorVersion;
use aws_sdk_sns::error::DisplayErrorContext;

use crate::secrets::{https_client, local_sdk_config};

/// Publishes to one topic.
#[derive(Clone, Debug)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsPublisher {
    /// The standard AWS configuration chain (the Lambda role's credentials, the region, and
    /// `AWS_ENDPOINT_URL_SNS` when set).
    pub async fn from_env(topic_arn: &str) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        SnsPublisher {
            client: aws_sdk_sns::Client::new(&sdk),
            topic_arn: topic_arn.to_string(),
        }
    }

    /// An explicit endpoint, region and static credentials; reads no environment (tests point
    /// it at moto's server).
    pub fn with_endpoint(
        topic_arn: &str,
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Self {
        let sdk = local_sdk_config(endpoint, region, access_key, secret_key);
        SnsPublisher {
            client: aws_sdk_sns::Client::new(&sdk),
            topic_arn: topic_arn.to_string(),
        }
    }

    /// The SDK client itself (tests create topics and subscriptions with it).
    pub fn sdk(&self) -> &aws_sdk_sns::Client {
        &self.client
    }

    /// Publishes `message` (JSON text) with `subject`; the error as a sentence without secrets.
    pub async fn publish(&self, subject: &str, message: &str) -> Result<(), String> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SNS publish failed: {}", DisplayErrorContext(&e)))
    }
}
