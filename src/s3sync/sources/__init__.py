"""Where changes come from: notification payloads, the SQS consumer, the scheduler."""
