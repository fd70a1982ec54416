package groups

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors returned by a [Service]. They are always wrapped in an error that
// starts with "groups: " and names the group, for example
// `groups: "lobby": group not found`; test for them with [errors.Is].
var (
	// ErrGroupAlreadyExists: Create or CreateWithTTL named a live group.
	ErrGroupAlreadyExists = errors.New("group already exists")
	// ErrGroupNotFound: the group does not exist, was deleted or has expired.
	ErrGroupNotFound = errors.New("group not found")
	// ErrMemberAlreadyExists: Add named a uid that is already a member.
	ErrMemberAlreadyExists = errors.New("member already exists")
	// ErrMemberNotFound: Remove named a uid that is not a member.
	ErrMemberNotFound = errors.New("member not found")
	// ErrNoTTL: RenewTTL named a group created without a TTL.
	ErrNoTTL = errors.New("group has no TTL")
	// ErrInvalidTTL: CreateWithTTL was given a TTL that is not positive.
	ErrInvalidTTL = errors.New("invalid TTL")
)

// Service is implemented by the in-memory groups ([Memory]) and the cluster
// groups.
//
// A group is a named set of uids. It exists from Create until Delete or, for a
// group created with a TTL, until the TTL passes without RenewTTL; an expired
// group is not found, by every method, as soon as it expires. Removing the
// last member does not delete a group. Only CreateWithTTL and RenewTTL set the
// expiry: adding or removing members does not renew it.
//
// Every method fails with ctx's error (wrapped) if ctx is done, and with an
// error wrapping [ErrGroupNotFound] if the group does not exist.
type Service interface {
	// Create creates an empty group without TTL. It fails with
	// ErrGroupAlreadyExists if a live group has that name.
	Create(ctx context.Context, name string) error
	// CreateWithTTL creates an empty group that expires when ttl passes
	// without RenewTTL. It fails with ErrGroupAlreadyExists if a live group
	// has that name and with ErrInvalidTTL if ttl <= 0.
	CreateWithTTL(ctx context.Context, name string, ttl time.Duration) error
	// Add adds uid to the group. It fails with ErrMemberAlreadyExists if uid
	// is already a member.
	Add(ctx context.Context, name, uid string) error
	// Remove removes uid from the group. It fails with ErrMemberNotFound if
	// uid is not a member.
	Remove(ctx context.Context, name, uid string) error
	// RemoveAll removes every member; the group itself remains.
	RemoveAll(ctx context.Context, name string) error
	// Members returns the uids of the group's members, sorted; an empty group
	// gives an empty, non-nil slice. The caller owns the slice.
	Members(ctx context.Context, name string) ([]string, error)
	// Contains reports whether uid is a member of the group.
	Contains(ctx context.Context, name, uid string) (bool, error)
	// Count returns the number of members of the group.
	Count(ctx context.Context, name string) (int, error)
	// Broadcast pushes v on route to every member with one call to the
	// Pusher and returns the uids it could not reach. A group without
	// members pushes nothing. An error from the Pusher is returned wrapped,
	// together with the uids the Pusher reported.
	Broadcast(ctx context.Context, name, route string, v any) (failed []string, err error)
	// Multicast is Broadcast restricted to the members for which keep
	// returns true; if none is kept, nothing is pushed. keep is called once
	// per member, without any lock held, and may be called concurrently by
	// concurrent Multicasts. A nil keep keeps every member.
	Multicast(ctx context.Context, name, route string, v any, keep func(uid string) bool) (failed []string, err error)
	// RenewTTL restarts the TTL of a group created with CreateWithTTL: it
	// now expires ttl after this call. It fails with ErrNoTTL for a group
	// created without TTL.
	RenewTTL(ctx context.Context, name string) error
	// Delete deletes the group and its members.
	Delete(ctx context.Context, name string) error
}

// Pusher delivers one push to many users; the caller (the app) serializes v once
// and encodes one packet for all of them. It returns the uids it could not reach.
//
// A Service calls PushToUsers without holding any lock, with a uids slice that
// is never empty, is in no particular order, and that the Pusher owns (it
// may keep or modify it).
type Pusher interface {
	// PushToUsers pushes v on route to every user in uids and returns the
	// uids it could not reach. An error means the push as a whole failed;
	// failed may still list uids.
	PushToUsers(ctx context.Context, route string, v any, uids []string) (failed []string, err error)
}

// pushTo filters uids with keep (if not nil) and pushes to the rest with
// one call to p: both implementations broadcast this way.
func pushTo(ctx context.Context, p Pusher, name, route string, v any, uids []string, keep func(string) bool) ([]string, error) {
	if keep != nil {
		uids = slices.DeleteFunc(uids, func(uid string) bool { return !keep(uid) })
	}
	if len(uids) == 0 {
		return nil, nil
	}
	failed, err := p.PushToUsers(ctx, route, v, uids)
	if err != nil {
		return failed, fmt.Errorf("groups: %q: push to route %q: %w", name, route, err)
	}
	return failed, nil
}
