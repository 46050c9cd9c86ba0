//! Small macros shared by the layers.

/// `get_ref`, `get_mut` and `into_inner` for a service whose wrapped service
/// is the field `inner: S`.
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service and returns the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
