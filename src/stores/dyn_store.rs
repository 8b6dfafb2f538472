//! Choosing the store at run time: [`DynCacheStore`], an object-safe face of
//! [`CacheStore`], so a service can pick memory, Redis or another backend
//! from its configuration and hold it as `Arc<dyn DynCacheStore<V>>`.
//!
//! Every `CacheStore` is a `DynCacheStore` (blanket impl), and
//! `Arc<dyn DynCacheStore<V>>` is itself a `CacheStore`, so code generic over
//! `CacheStore` takes the chosen store unchanged. The price: one boxed future
//! per call (and a boxed loader per `try_get_or_set`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::errors::{DynError, Result};
use crate::metrics::CacheStats;
use crate::refresh::{RefreshLoader, RefreshOptions};
use crate::store::{CacheStore, Metadata, SetOptions};

/// A boxed future that may borrow from the store and the key.
pub type DynFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The loader of [`DynCacheStore::try_get_or_set_dyn`].
pub type DynLoader<'a, V> = Box<dyn FnOnce() -> DynFuture<'a, std::result::Result<V, DynError>> + Send + 'a>;

/// The loader of [`DynCacheStore::get_or_refresh_dyn`]: a refresh may run it
/// in the background, after the call returned, so it owns what it uses.
pub type DynRefreshLoader<V> =
    Box<dyn FnOnce() -> DynFuture<'static, std::result::Result<V, DynError>> + Send + 'static>;

/// [`CacheStore`] with boxed futures, so it can be a trait object.
///
/// ```
/// use pepperpy_caching::{CacheStore, DynCacheStore, LruPolicy, MemoryStore, S3FifoPolicy, SetOptions};
/// use std::sync::Arc;
///
/// fn from_config(kind: &str) -> pepperpy_caching::Result<Arc<dyn DynCacheStore<String>>> {
///     Ok(match kind {
///         "lru" => Arc::new(MemoryStore::new(LruPolicy::new(1_000)?)),
///         _ => Arc::new(MemoryStore::new(S3FifoPolicy::new(1_000)?)),
///         // "redis" => Arc::new(RedisStore::builder(url).build().await?), with the `redis` feature
///     })
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> pepperpy_caching::Result<()> {
/// let store = from_config("s3-fifo")?;
/// store.set("k", "v".to_string(), SetOptions::new()).await?; // CacheStore methods work on it
/// assert_eq!(store.get("k").await?.as_deref(), Some("v"));
/// # Ok(()) }
/// ```
pub trait DynCacheStore<V>: Send + Sync {
    /// [`CacheStore::get`].
    fn get_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<Option<V>>>;
    /// [`CacheStore::set`].
    fn set_dyn<'a>(&'a self, key: &'a str, value: V, options: SetOptions) -> DynFuture<'a, Result<()>>;
    /// [`CacheStore::delete`].
    fn delete_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<bool>>;
    /// [`CacheStore::get_many`].
    fn get_many_dyn<'a>(&'a self, keys: &'a [&'a str]) -> DynFuture<'a, Result<Vec<Option<V>>>>;
    /// [`CacheStore::set_many`].
    fn set_many_dyn<'a>(&'a self, entries: Vec<(&'a str, V)>, options: SetOptions) -> DynFuture<'a, Result<()>>;
    /// [`CacheStore::delete_many`].
    fn delete_many_dyn<'a>(&'a self, keys: &'a [&'a str]) -> DynFuture<'a, Result<usize>>;
    /// [`CacheStore::contains`].
    fn contains_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<bool>>;
    /// [`CacheStore::get_metadata`].
    fn get_metadata_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<Option<Metadata>>>;
    /// [`CacheStore::update_metadata`].
    fn update_metadata_dyn<'a>(&'a self, key: &'a str, metadata: Metadata) -> DynFuture<'a, Result<bool>>;
    /// [`CacheStore::invalidate`].
    fn invalidate_dyn<'a>(&'a self, pattern: &'a str) -> DynFuture<'a, Result<usize>>;
    /// [`CacheStore::invalidate_tags`].
    fn invalidate_tags_dyn<'a>(&'a self, tags: &'a [&'a str]) -> DynFuture<'a, Result<usize>>;
    /// [`CacheStore::get_tags`].
    fn get_tags_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<Option<Vec<String>>>>;
    /// [`CacheStore::keys`].
    fn keys_dyn<'a>(&'a self, pattern: Option<&'a str>) -> DynFuture<'a, Result<Vec<String>>>;
    /// [`CacheStore::size`].
    fn size_dyn(&self) -> DynFuture<'_, Result<usize>>;
    /// [`CacheStore::clear`].
    fn clear_dyn(&self) -> DynFuture<'_, Result<()>>;
    /// [`CacheStore::try_get_or_set`], with a boxed loader.
    fn try_get_or_set_dyn<'a>(
        &'a self,
        key: &'a str,
        loader: DynLoader<'a, V>,
        options: SetOptions,
    ) -> DynFuture<'a, Result<V>>;
    /// [`CacheStore::get_or_refresh`], with a boxed loader.
    fn get_or_refresh_dyn<'a>(
        self: Arc<Self>,
        key: &'a str,
        loader: DynRefreshLoader<V>,
        options: &'a RefreshOptions,
    ) -> DynFuture<'a, Result<V>>;
    /// [`CacheStore::stats`].
    fn stats_dyn(&self) -> CacheStats;
    /// [`CacheStore::reset_stats`].
    fn reset_stats_dyn(&self);
}

impl<V: Send + 'static, S: CacheStore<V> + 'static> DynCacheStore<V> for S {
    fn get_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<Option<V>>> {
        Box::pin(self.get(key))
    }
    fn set_dyn<'a>(&'a self, key: &'a str, value: V, options: SetOptions) -> DynFuture<'a, Result<()>> {
        Box::pin(self.set(key, value, options))
    }
    fn delete_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<bool>> {
        Box::pin(self.delete(key))
    }
    fn get_many_dyn<'a>(&'a self, keys: &'a [&'a str]) -> DynFuture<'a, Result<Vec<Option<V>>>> {
        Box::pin(self.get_many(keys))
    }
    fn set_many_dyn<'a>(&'a self, entries: Vec<(&'a str, V)>, options: SetOptions) -> DynFuture<'a, Result<()>> {
        Box::pin(self.set_many(entries, options))
    }
    fn delete_many_dyn<'a>(&'a self, keys: &'a [&'a str]) -> DynFuture<'a, Result<usize>> {
        Box::pin(self.delete_many(keys))
    }
    fn contains_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<bool>> {
        Box::pin(self.contains(key))
    }
    fn get_metadata_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<Option<Metadata>>> {
        Box::pin(self.get_metadata(key))
    }
    fn update_metadata_dyn<'a>(&'a self, key: &'a str, metadata: Metadata) -> DynFuture<'a, Result<bool>> {
        Box::pin(self.update_metadata(key, metadata))
    }
    fn invalidate_dyn<'a>(&'a self, pattern: &'a str) -> DynFuture<'a, Result<usize>> {
        Box::pin(self.invalidate(pattern))
    }
    fn invalidate_tags_dyn<'a>(&'a self, tags: &'a [&'a str]) -> DynFuture<'a, Result<usize>> {
        Box::pin(self.invalidate_tags(tags))
    }
    fn get_tags_dyn<'a>(&'a self, key: &'a str) -> DynFuture<'a, Result<Option<Vec<String>>>> {
        Box::pin(self.get_tags(key))
    }
    fn keys_dyn<'a>(&'a self, pattern: Option<&'a str>) -> DynFuture<'a, Result<Vec<String>>> {
        Box::pin(self.keys(pattern))
    }
    fn size_dyn(&self) -> DynFuture<'_, Result<usize>> {
        Box::pin(self.size())
    }
    fn clear_dyn(&self) -> DynFuture<'_, Result<()>> {
        Box::pin(self.clear())
    }
    fn try_get_or_set_dyn<'a>(
        &'a self,
        key: &'a str,
        loader: DynLoader<'a, V>,
        options: SetOptions,
    ) -> DynFuture<'a, Result<V>> {
        Box::pin(self.try_get_or_set(key, loader, options))
    }
    fn get_or_refresh_dyn<'a>(
        self: Arc<Self>,
        key: &'a str,
        loader: DynRefreshLoader<V>,
        options: &'a RefreshOptions,
    ) -> DynFuture<'a, Result<V>> {
        Box::pin(async move { self.get_or_refresh(key, loader, options).await })
    }
    fn stats_dyn(&self) -> CacheStats {
        self.stats()
    }
    fn reset_stats_dyn(&self) {
        self.reset_stats()
    }
}

impl<V: Send + 'static> dyn DynCacheStore<V> {
    /// [`CacheStore::get_or_refresh`] on the store as it is held: the trait's
    /// method takes `&Arc<Self>`, which for `Arc<dyn DynCacheStore<V>>` would
    /// be an `Arc` of that `Arc`. Boxes the loader for
    /// [`get_or_refresh_dyn`](DynCacheStore::get_or_refresh_dyn).
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use pepperpy_caching::{DynCacheStore, LruPolicy, MemoryStore, RefreshOptions, TokioRuntime};
    /// use std::{sync::Arc, time::Duration};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// let store: Arc<dyn DynCacheStore<u64>> = Arc::new(MemoryStore::new(LruPolicy::new(100)?));
    /// let options = RefreshOptions::new(TokioRuntime, Duration::from_secs(60), Duration::from_secs(600));
    /// let price = store.get_or_refresh("price:42", || async { Ok::<_, std::io::Error>(1999) }, &options).await?;
    /// assert_eq!(price, 1999);
    /// # Ok(()) }
    /// # }
    /// ```
    pub async fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        E: Into<DynError> + 'static,
    {
        let loader: DynRefreshLoader<V> =
            Box::new(move || Box::pin(async move { loader.load().await.map_err(Into::into) }));
        Arc::clone(self).get_or_refresh_dyn(key, loader, options).await
    }
}

impl<V: Send + 'static> CacheStore<V> for Arc<dyn DynCacheStore<V>> {
    async fn get(&self, key: &str) -> Result<Option<V>> {
        self.as_ref().get_dyn(key).await
    }
    async fn set(&self, key: &str, value: V, options: SetOptions) -> Result<()> {
        self.as_ref().set_dyn(key, value, options).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.as_ref().delete_dyn(key).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<V>>> {
        self.as_ref().get_many_dyn(keys).await
    }
    async fn set_many(&self, entries: Vec<(&str, V)>, options: SetOptions) -> Result<()> {
        self.as_ref().set_many_dyn(entries, options).await
    }
    async fn delete_many(&self, keys: &[&str]) -> Result<usize> {
        self.as_ref().delete_many_dyn(keys).await
    }
    async fn contains(&self, key: &str) -> Result<bool> {
        self.as_ref().contains_dyn(key).await
    }
    async fn get_metadata(&self, key: &str) -> Result<Option<Metadata>> {
        self.as_ref().get_metadata_dyn(key).await
    }
    async fn update_metadata(&self, key: &str, metadata: Metadata) -> Result<bool> {
        self.as_ref().update_metadata_dyn(key, metadata).await
    }
    async fn invalidate(&self, pattern: &str) -> Result<usize> {
        self.as_ref().invalidate_dyn(pattern).await
    }
    async fn invalidate_tags(&self, tags: &[&str]) -> Result<usize> {
        self.as_ref().invalidate_tags_dyn(tags).await
    }
    async fn get_tags(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.as_ref().get_tags_dyn(key).await
    }
    async fn keys(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        self.as_ref().keys_dyn(pattern).await
    }
    async fn size(&self) -> Result<usize> {
        self.as_ref().size_dyn().await
    }
    async fn clear(&self) -> Result<()> {
        self.as_ref().clear_dyn().await
    }
    async fn try_get_or_set<F, Fut, E>(&self, key: &str, loader: F, options: SetOptions) -> Result<V>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<V, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let loader: DynLoader<'_, V> = Box::new(move || Box::pin(async move { loader().await.map_err(Into::into) }));
        self.as_ref().try_get_or_set_dyn(key, loader, options).await
    }
    async fn get_or_refresh<E>(
        self: &Arc<Self>,
        key: &str,
        loader: impl RefreshLoader<V, E>,
        options: &RefreshOptions,
    ) -> Result<V>
    where
        E: Into<DynError> + 'static,
    {
        <dyn DynCacheStore<V>>::get_or_refresh(self, key, loader, options).await
    }
    fn stats(&self) -> CacheStats {
        self.as_ref().stats_dyn()
    }
    fn reset_stats(&self) {
        self.as_ref().reset_stats_dyn()
    }
}
