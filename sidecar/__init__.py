"""The sidecar in every engine pod: scrapes engine load, measures requests, reports both."""
