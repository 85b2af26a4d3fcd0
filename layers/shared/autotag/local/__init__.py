"""Running the pipeline on one machine: moto for S3/EventBridge/SQS, embedded Postgres,
and a driver that invokes the real handlers with the deployment's queue rules."""
