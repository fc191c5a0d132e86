"""WeChat's callbacks: the authorization-event URL and the message-and-event URL."""
