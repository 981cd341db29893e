package main

import (
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/converter"

	"claimcheck.local/worker-go/third_party/s3driver"
	"claimcheck.local/worker-go/third_party/s3driver/awssdkv2"
)

// sdkStorage is the Go SDK's own External Storage with its own S3 driver, as a team that
// offloads in the SDK configures it, when SDK_STORAGE_S3_BUCKET names a bucket: the endpoint
// and credentials come from AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY. Without it the client stores nothing itself (behind the proxy).
func sdkStorage() (converter.ExternalStorage, error) {
	bucket := os.Getenv("SDK_STORAGE_S3_BUCKET")
	if bucket == "" {
		return converter.ExternalStorage{}, nil
	}
	client := s3.New(s3.Options{
		Region:       envOr("AWS_REGION", "us-east-1"),
		BaseEndpoint: aws.String(os.Getenv("AWS_ENDPOINT")),
		UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(
			os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
	})
	driver, err := s3driver.NewDriver(s3driver.Options{
		Client: awssdkv2.NewClient(client),
		Bucket: s3driver.StaticBucket(bucket),
	})
	if err != nil {
		return converter.ExternalStorage{}, err
	}
	return converter.ExternalStorage{Drivers: []converter.StorageDriver{driver}}, nil
}
