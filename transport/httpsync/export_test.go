package httpsync

import "context"

// PostRaw sends body to the cloud's sync endpoint once, without retries,
// and returns the answer: for tests that send what a well-behaved client
// never would.
func (c *Client) PostRaw(ctx context.Context, body []byte) ([]byte, error) {
	var st Report
	return c.retry(ctx, 1, &st, nil, func(ctx context.Context, pr *progress) ([]byte, error) {
		return c.post(ctx, body, pr)
	})
}
